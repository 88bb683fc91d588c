#!/usr/bin/env bash
# Compiles every kiq source of a build (from its compile_commands.json) with clang's thread-safety
# analysis as errors (-Werror=thread-safety), syntax only: every ABSL_GUARDED_BY / LOCKS_EXCLUDED /
# EXCLUSIVE_LOCKS_REQUIRED annotation is checked by the compiler, whatever compiler built the tree.
# Usage: scripts/check_thread_safety.sh BUILD_DIR   (ctest runs it as build.ClangThreadSafety)
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
clang=$(command -v clang++ || true)
[ -n "$clang" ] || { echo "check_thread_safety: clang++ is not installed (Debian package clang)" >&2; exit 1; }
python3 - "$build/compile_commands.json" "$root" "$clang" <<'PY' > "$build/thread_safety_commands.txt"
import json, shlex, sys
db, root, clang = sys.argv[1], sys.argv[2], sys.argv[3]
for entry in json.load(open(db)):
    f = entry["file"]
    # The project's own sources: not generated code, not the build tree.
    if not f.startswith(root + "/") or f.startswith(entry["directory"] + "/") or "/build" in f[len(root):]:
        continue
    args = shlex.split(entry["command"])
    out, skip = [clang], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a == f or a.startswith("/usr/bin/"):
            continue
        out.append(a)
    if args[0].endswith("ccache"):  # ccache g++ ...: the compiler is the second word
        out = [clang] + out[2:]
    out += ["-fsyntax-only", "-Wno-unknown-warning-option", "-Wthread-safety",
            "-Werror=thread-safety", f]
    print(entry["directory"] + "\t" + shlex.join(out))
PY
count=$(wc -l < "$build/thread_safety_commands.txt")
echo "check_thread_safety: $count sources with $("$clang" --version | head -1)"
fail=0
# Two at a time (this machine's cores); each prints its own diagnostics.
while IFS=$'\t' read -r dir cmd; do
  printf '%s\0%s\0' "$dir" "$cmd"
done < "$build/thread_safety_commands.txt" |
  xargs -0 -n2 -P"$(nproc)" sh -c 'cd "$0" && eval "$1" 2>&1 | grep -E "thread-safety|error:" -A3 && exit 1 || exit 0' || fail=1
if [ "$fail" -ne 0 ]; then
  echo "check_thread_safety: FAILED (see the diagnostics above)" >&2
  exit 1
fi
echo "check_thread_safety: $count sources, no thread-safety finding"
