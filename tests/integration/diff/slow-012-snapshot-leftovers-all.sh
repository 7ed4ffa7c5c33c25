#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# 012-snapshot-leftovers at every kill point, not a sample (label slow: ctest -L slow).
VDISK_KILL_STRIDE=1 exec bash "$(dirname "$0")/012-snapshot-leftovers.sh"
