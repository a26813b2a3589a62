# oneDNN (libdnnl), found by its header and library rather than by its CMake package.
#
# Why not find_package(dnnl CONFIG): Debian's libdnnl-dev 2.6.3 is built with oneDNN's OpenCL
# GPU runtime, and its dnnl-config.cmake runs find_package(OpenCL REQUIRED) to put
# OpenCL::OpenCL into DNNL::dnnl's link interface, for programs that use the OpenCL interop
# API (dnnl_ocl.hpp). On a machine without ocl-icd-opencl-dev that nested REQUIRED ends the
# configure step, QUIET or not. This project runs oneDNN's CPU engine only and never includes
# the interop headers; libdnnl.so.2 already names the OpenCL loader it needs at run time
# (libOpenCL.so.1, which libdnnl2 depends on). Installing OpenCL headers that nothing compiles
# against would hide the packaging bug instead of avoiding it, and the same lookup also finds a
# oneDNN built from source without the GPU runtime, or one whose package needs a SYCL compiler.
#
#   -DDNNL_ROOT=/opt/dnnl   a oneDNN installed elsewhere (include/ and lib/ below it)
#
# Defines the imported target DNNL::dnnl, and DNNL_VERSION.
find_path(DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.hpp HINTS ${DNNL_ROOT} ENV DNNL_ROOT
          PATH_SUFFIXES include)
find_library(DNNL_LIBRARY NAMES dnnl HINTS ${DNNL_ROOT} ENV DNNL_ROOT PATH_SUFFIXES lib lib64)
if(NOT DNNL_INCLUDE_DIR OR NOT DNNL_LIBRARY)
  message(FATAL_ERROR "oneDNN was not found (oneapi/dnnl/dnnl.hpp: ${DNNL_INCLUDE_DIR}, "
                      "libdnnl: ${DNNL_LIBRARY}); install libdnnl-dev or set DNNL_ROOT")
endif()

file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _rn_dnnl_version_lines
     REGEX "^#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
foreach(_part MAJOR MINOR PATCH)
  string(REGEX REPLACE ".*DNNL_VERSION_${_part} ([0-9]+).*" "\\1" _rn_dnnl_${_part}
         "${_rn_dnnl_version_lines}")
endforeach()
set(DNNL_VERSION "${_rn_dnnl_MAJOR}.${_rn_dnnl_MINOR}.${_rn_dnnl_PATCH}")
# The backend uses the 2.x API (dnnl::memory::desc without the 3.x changes, post-ops by index).
if(DNNL_VERSION VERSION_LESS 2.6 OR NOT DNNL_VERSION VERSION_LESS 3.0)
  message(FATAL_ERROR "oneDNN ${DNNL_VERSION} at ${DNNL_INCLUDE_DIR}: this project needs 2.6 <= "
                      "oneDNN < 3.0 (Debian 12's libdnnl-dev is 2.6.3)")
endif()

# Threads per rank are set through OpenMP (omp_set_num_threads), so oneDNN must use OpenMP.
file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_config.h" _rn_dnnl_threading
     REGEX "^#define DNNL_CPU_THREADING_RUNTIME ")
if(NOT _rn_dnnl_threading MATCHES "DNNL_RUNTIME_OMP")
  message(FATAL_ERROR "oneDNN at ${DNNL_INCLUDE_DIR} is built with '${_rn_dnnl_threading}'; "
                      "this project sets threads per rank through OpenMP and needs "
                      "DNNL_CPU_RUNTIME=OMP")
endif()

add_library(DNNL::dnnl UNKNOWN IMPORTED)
set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${DNNL_LIBRARY}"
                      INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
message(STATUS "oneDNN ${DNNL_VERSION}: ${DNNL_LIBRARY}")
