#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The DiscUtils swap and xfs v4 disks (10 GiB virtual; xfs unpacks to 644 MiB) read byte for
# byte as qemu-img reads them, checked clean, mapped as their BAT says: see windows-large.bash.
. "$(dirname "$0")/../lib.sh"
cases=(
	"discutils-swap 1"
	"discutils-xfs 20"
)
. "$(dirname "$0")/windows-large.bash"
