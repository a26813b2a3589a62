#!/bin/bash
# The house rules of the source tree, kept true: which folder may include which, where MPI and
# the environment are read, and that each folder's README lists exactly the files in it.
#   layout_test.sh SOURCE_DIR
set -u
cd "$1" || exit 2
status=0
fail() { echo "layout: $*"; status=1; }
# Lines of C++/CUDA sources under $1 matching the extended regex $2.
hits() { grep -rnE "$2" $1 --include='*.h' --include='*.cpp' --include='*.cu' --include='*.cuh'; }

# Who may include whom: core is the bottom; io and distributed sit on core, side by side;
# launch/train on all three; launch/cli on everything.
while read -r dir forbidden; do
  found=$(hits "$dir" "#include \"($forbidden)/")
  [ -z "$found" ] || fail "$dir may not include $forbidden/:"$'\n'"$found"
done <<'RULES'
core io|distributed|launch
io distributed|launch
distributed io|launch
launch/train launch/cli
RULES

# io sees MPI only in its HDF5 adapter (MPI-IO needs the communicator).
found=$(hits io '#include [<"]mpi\.h[>"]' | grep -v '^io/hdf5_handle\.cpp:')
[ -z "$found" ] || fail "io includes mpi.h outside io/hdf5_handle.cpp:"$'\n'"$found"
# A launcher's variables are read in one function (distributed/communicator.cpp, launch_hints).
found=$(hits "core io distributed launch" 'getenv\("(OMPI_|PMI|SLURM_)' |
        grep -v '^distributed/communicator\.cpp:')
[ -z "$found" ] || fail "a launcher's variables read outside launch_hints:"$'\n'"$found"
# The test hooks are read from the environment in one file.
found=$(hits "core io distributed launch" 'getenv\("RESNET_TEST_' | grep -v '^launch/cli/test_hooks\.cpp:')
[ -z "$found" ] || fail "RESNET_TEST_ variables read outside launch/cli/test_hooks.cpp:"$'\n'"$found"
# The engine reads no environment at all: what it needs comes in RankEnvironment or Config.
found=$(hits launch/train 'getenv')
[ -z "$found" ] || fail "launch/train reads the environment:"$'\n'"$found"

# Each README with a file table names in it every source file of its folder, and only those.
for dir in core distributed io launch/train launch/cli; do
  listed=$(grep '^|' "$dir/README.md" | grep -oE '`[a-z0-9_]+(\.[a-z*]+)?`' | tr -d '`' | sort -u)
  for f in "$dir"/*.h "$dir"/*.cpp; do
    name=$(basename "$f"); stem=${name%.*}
    echo "$listed" | grep -qxE "$name|$stem\.\*" || fail "$dir/README.md does not name $name"
  done
  for entry in $(echo "$listed" | grep -E '\.(h|cpp|\*)$'); do
    ls "$dir"/$entry > /dev/null 2>&1 || fail "$dir/README.md names $entry, which is not there"
  done
done
[ $status = 0 ] && echo "layout: ok"
exit $status
