#!/bin/sh
# Every function declared in the header has a documentation comment right above it.
set -eu
h=$1
awk '
  /^\/\*\*/ { doc = 1 }
  /^ \*\// { lastdoc = NR }
  /^[a-z].* astranet_[a-z_]+\(/ || /^const char \*astranet_/ {
    n++
    if (lastdoc != NR - 1) { print "FAIL: undocumented: " $0; bad++ }
  }
  END { if (bad) exit 1; if (n < 30) { print "FAIL: only " n " functions"; exit 1 } print n " functions, all documented" }
' "$h"
