#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The DiscUtils xfs v5 and lvm2 disks (10 GiB virtual; lvm2, the only sample with UNMAPPED
# blocks, unpacks to 580 MiB) read byte for byte as qemu-img reads them, checked clean,
# mapped as their BAT says: see windows-large.bash.
. "$(dirname "$0")/../lib.sh"
cases=(
	"discutils-xfs5 5"
	"discutils-lvm2 18"
)
. "$(dirname "$0")/windows-large.bash"
