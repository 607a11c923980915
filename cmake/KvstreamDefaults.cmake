# Per-target defaults, applied explicitly by every target of the project (no global flags).
# Compiler flags apply to C++ sources only: nvcc takes its own (cuda/CMakeLists.txt).
function(kvstream_target_defaults target)
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  set(cxx $<COMPILE_LANGUAGE:CXX>)
  target_compile_options(${target} PRIVATE
    $<${cxx}:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
  if(KVSTREAM_WERROR)
    target_compile_options(${target} PRIVATE $<${cxx}:-Werror>)
  endif()
  if(KVSTREAM_SANITIZE)
    target_compile_options(${target} PRIVATE
      $<${cxx}:-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer>)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(KVSTREAM_BUILD_FUZZERS)
    # Coverage feedback from every library, not only from the fuzz target itself.
    target_compile_options(${target} PRIVATE $<${cxx}:-fsanitize=fuzzer-no-link>)
  endif()
endfunction()
