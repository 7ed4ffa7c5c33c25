#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The CLI's help and its man page agree, both ways: every option in a command's --help is
# an option (a .TP tag) of that command's section of docs/vdisk.1, and every option tag of
# the man page appears in some --help. `vdisk help CMD` prints exactly what `vdisk CMD
# --help` prints, on stdout, exit 0. Usage errors print one line "vdisk: VERB: message"
# plus the synopsis on stderr and exit 64; operational errors print one line and exit 1.
. "$(dirname "$0")/../lib.sh"
requires groff --version

MAN=$VDISK_SOURCE_DIR/docs/vdisk.1
[ -r "$MAN" ] || die "man page missing: $MAN"

# the man page renders without warnings
groff -man -ww -z "$MAN" 2>"$SCRATCH/groff.err" || die "groff failed on $MAN"
[ ! -s "$SCRATCH/groff.err" ] || die "groff warnings: $(cat "$SCRATCH/groff.err")"

# options in text: tokens -x / --long-name (the part before '=' of --opt=value)
options_in()
{
	{ grep -oE -- '(^|[^[:alnum:]-])--?[[:alpha:]][[:alnum:]-]*' || :; } | sed -E 's/^[^-]*//' |
		sort -u
}

# help_options CMD: options named in the first column of the "Options:" block (an option
# line may hold its description on the next, more indented, line)
help_options()
{
	vdisk help "$1" | sed -n '/^Options:$/,$p' | tail -n +2 |
		sed -E 's/^  ([^ ].*[^ ]|[^ ])  +.*$/\1/; s/^  ([^ ])/\1/; /^ *$/d' |
		{ grep -E '^-' || :; } | options_in
}

# man_tags [SECTION-REGEX]: options in the .TP tags of the man page (or of one .SS section)
man_tags()
{
	local re=${1:-}
	sed 's/\\-/-/g; s/\\f[BIRP]//g' "$MAN" | awk -v re="$re" '
		/^\.S[SH] / { insec = (re == "" || $0 ~ re) }
		insec && tag { print; tag = 0 }
		/^\.TP/ { tag = 1 }' | options_in
}

vdisk >"$OUT" || die "vdisk without arguments failed"
mapfile -t cmds < <(sed -n '/^Commands:$/,/^$/p' "$OUT" | awk 'NF > 1 { print $1 }')
[ "${#cmds[@]}" -ge 9 ] || die "vdisk lists ${#cmds[@]} commands: ${cmds[*]}"
log "commands: ${cmds[*]}"

all_help=$SCRATCH/all-help
vdisk --help | options_in >"$all_help"
for c in "${cmds[@]}"; do
	expect_status 0 vdisk help "$c"
	cp "$OUT" "$SCRATCH/help-$c"
	[ ! -s "$ERR" ] || die "vdisk help $c wrote to stderr"
	expect_status 0 vdisk "$c" --help
	assert_same_file "$OUT" "$SCRATCH/help-$c" "vdisk help $c vs vdisk $c --help"
	grep -q "^usage: vdisk $c " "$OUT" || die "vdisk $c --help has no usage line"
	expect_status 0 vdisk "$c" -h
	assert_same_file "$OUT" "$SCRATCH/help-$c" "vdisk $c -h vs vdisk help $c"

	grep -qE "^\.SS \"vdisk $c( |\")" "$MAN" || die "man page has no section for $c"
	help_options "$c" >"$SCRATCH/opts-$c"
	grep -qx -- --help "$SCRATCH/opts-$c" || die "vdisk $c --help does not list --help"
	man_tags "^\\.SS \"vdisk $c[ \"]" >"$SCRATCH/man-$c"
	man_tags '^\.SH GLOBAL OPTIONS' >>"$SCRATCH/man-$c"
	missing=$(comm -23 "$SCRATCH/opts-$c" <(sort -u "$SCRATCH/man-$c"))
	[ -z "$missing" ] || die "options of vdisk $c missing in its man section: $missing"
	cat "$SCRATCH/opts-$c" >>"$all_help"
	log "$c: $(tr '\n' ' ' <"$SCRATCH/opts-$c")"
done
man_tags | grep -q -- --block-size || die "man_tags found no option tags: parsing broken"
missing=$(comm -23 <(man_tags) <(sort -u "$all_help"))
[ -z "$missing" ] || die "man page options that no --help lists: $missing"

# usage errors: exit 64, "vdisk: VERB: message" then the synopsis, nothing on stdout
usage_error()
{
	local verb=$1
	shift
	expect_status 64 vdisk "$@"
	[ ! -s "$OUT" ] || die "'vdisk $*' printed on stdout"
	[ "$(wc -l <"$ERR")" -eq 2 ] || die "'vdisk $*': expected 2 lines on stderr, got: $(cat "$ERR")"
	grep -qE "^vdisk: $verb: [^ ]" <(head -1 "$ERR") || die "'vdisk $*': first line: $(head -1 "$ERR")"
	grep -qE "^usage: vdisk $verb" <(tail -1 "$ERR") || die "'vdisk $*': no synopsis: $(cat "$ERR")"
}
usage_error info info
usage_error info info a b
usage_error info info --bogus x.vhdx
usage_error info info --output=xml x.vhdx
usage_error create create --type sparse x.vhdx 1G
usage_error create create x.vhdx 12Q
usage_error create create x.vhdx 1.5G
usage_error create create x.vhdx 99999999999999999999
usage_error create create x.vhdx
usage_error create create --block-size 3M x.vhdx 1G
usage_error create create --logical-sector 1024 x.vhdx 1G
usage_error create create --block-size
usage_error convert convert -O qcow2 a b
usage_error convert convert -O raw --type fixed a b
usage_error convert convert -x a b
usage_error read read x.vhdx 0
usage_error read read x.vhdx 0 -1
usage_error write write x.vhdx
usage_error discard discard x.vhdx 0 1K 2
usage_error map map
usage_error check check --repair
usage_error checksum checksum
[ ! -e x.vhdx ] || die "a usage error created x.vhdx"
expect_status 64 vdisk nosuchcommand
expect_status 64 vdisk --nosuchoption
expect_status 64 vdisk help nosuchcommand
grep -q "nosuchcommand" "$ERR" || die "unknown command not named: $(cat "$ERR")"

# operational errors: exit 1, exactly one line naming the verb and the file
expect_status 1 vdisk info "$SCRATCH/missing.vhdx"
assert_eq "$(wc -l <"$ERR")" 1 "lines of an operational error"
grep -qE "^vdisk: info: $SCRATCH/missing.vhdx: No such file" "$ERR" || die "message: $(cat "$ERR")"
expect_status 1 vdisk checksum "$SCRATCH/missing.vhdx"
grep -qE "^vdisk: checksum: .*missing.vhdx" "$ERR" || die "message: $(cat "$ERR")"

expect_status 0 vdisk --version
grep -qE '^vdisk [0-9]+\.[0-9]+\.[0-9]+' "$OUT" || die "--version printed: $(cat "$OUT")"
log "ok"
