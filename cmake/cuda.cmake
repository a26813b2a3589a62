# Whether to build the CUDA backend, and the CUDA toolchain and libraries it needs.
#   -DRESNET_CUDA=AUTO  (default) build it when the CUDA compiler, cuDNN and NCCL are all found
#   -DRESNET_CUDA=ON    build it, and fail here, naming what is missing, when something is
#   -DRESNET_CUDA=OFF   CPU only
# Sets RESNET_WITH_CUDA, and the imported targets RN::cudnn and RN::nccl when it is ON.
# Only the CUDA runtime (linked statically), cuBLAS, cuDNN and NCCL are linked: never the
# driver library (libcuda.so.1), which the runtime loads itself when a GPU is used, so that
# the binaries start and run CPU work on machines without an NVIDIA driver.
set(RESNET_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE RESNET_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${RESNET_CUDA}" _rn_cuda_mode)
if(NOT _rn_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "RESNET_CUDA must be AUTO, ON or OFF, got '${RESNET_CUDA}'")
endif()
set(RESNET_WITH_CUDA OFF)

function(_rn_cuda_missing what)
  if(_rn_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "RESNET_CUDA=ON but ${what} (set CUDAToolkit_ROOT, or RESNET_CUDA=AUTO)")
  endif()
  message(STATUS "CUDA backend: off (${what})")
endfunction()

if(_rn_cuda_mode STREQUAL "OFF")
  message(STATUS "CUDA backend: off (RESNET_CUDA=OFF)")
else()
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
     AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    _rn_cuda_missing("no CUDA compiler was found")
  else()
    # A build machine may have no GPU to detect: default to Ampere and Hopper (A100, H100).
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80;90 CACHE STRING "CUDA architectures to compile for")
    endif()
    if(CMAKE_CXX_COMPILER_LAUNCHER AND NOT CMAKE_CUDA_COMPILER_LAUNCHER)
      set(CMAKE_CUDA_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
    endif()
    enable_language(CUDA)
    # CMake 3.25 knows no C++20 flag for nvcc 13, and then refuses C++20 targets: name the flag.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    find_package(CUDAToolkit REQUIRED)
    find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
    find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
    if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
      _rn_cuda_missing("cuDNN (cudnn.h, libcudnn) was not found")
    elseif(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
      _rn_cuda_missing("NCCL (nccl.h, libnccl) was not found")
    else()
      set(RESNET_WITH_CUDA ON)
      add_library(RN::cudnn UNKNOWN IMPORTED)
      set_target_properties(RN::cudnn PROPERTIES IMPORTED_LOCATION ${CUDNN_LIBRARY}
                            INTERFACE_INCLUDE_DIRECTORIES ${CUDNN_INCLUDE_DIR})
      add_library(RN::nccl UNKNOWN IMPORTED)
      set_target_properties(RN::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                            INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
      message(STATUS "CUDA backend: on (CUDA ${CMAKE_CUDA_COMPILER_VERSION}, "
                     "architectures ${CMAKE_CUDA_ARCHITECTURES}, ${CUDNN_LIBRARY}, ${NCCL_LIBRARY})")
    endif()
  endif()
endif()
