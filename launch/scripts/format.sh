#!/usr/bin/env bash
# The sources' formatting (.clang-format, with clang-format 14 as Debian 12 ships it):
#   bash launch/scripts/format.sh          # name every file that drifts from it; exit 1 if any
#   bash launch/scripts/format.sh --fix    # format every file in place
# CI runs the check (.ci/run, through `setup.sh format`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
tool=${CLANG_FORMAT:-clang-format-14}
command -v "$tool" > /dev/null || { echo "format: $tool not found (apt-get install clang-format-14)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.c' '*.cpp' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = "--fix" ]; then
  "$tool" -i "${files[@]}"
  echo "format: ${#files[@]} files formatted"
  exit 0
fi
drift=()
for f in "${files[@]}"; do
  "$tool" --dry-run -Werror "$f" > /dev/null 2>&1 || drift+=("$f")
done
if [ ${#drift[@]} -gt 0 ]; then
  printf 'format: %s drifts from .clang-format\n' "${drift[@]}"
  echo "format: ${#drift[@]} of ${#files[@]} files drift; bash launch/scripts/format.sh --fix formats them" >&2
  exit 1
fi
echo "format: all ${#files[@]} files as .clang-format says"
