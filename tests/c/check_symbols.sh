#!/bin/sh
# The shared library's SONAME is libastranet.so.0 and it exports only astranet_* functions.
set -eu
lib=$1
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = "libastranet.so.0" ] || { echo "FAIL: SONAME is '$soname'"; exit 1; }
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^astranet_' || true)
[ -z "$others" ] || { echo "FAIL: exported symbols other than astranet_*:"; echo "$others"; exit 1; }
count=$(nm -D --defined-only "$lib" | grep -c ' T astranet_')
[ "$count" -ge 30 ] || { echo "FAIL: only $count astranet_* functions exported"; exit 1; }
echo "SONAME $soname, $count exported functions, all astranet_*"
