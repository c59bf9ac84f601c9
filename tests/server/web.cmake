# web.cmake: registers the end-to-end tests of `lmkit serve` with ctest: the official openai npm
# package (js/openai.test.mjs) and the chat page in headless Chromium (js/chat_page.test.mjs),
# both run by `node --test` through js/run.mjs against the real binary. They skip (exit 77) when
# the shared models are absent and fail with "run scripts/setup.sh" when node, its packages or
# Chromium are missing. Not where the server's C++ units are tested (test_*.cpp).
set(_js ${CMAKE_CURRENT_SOURCE_DIR}/js)
find_program(LMKIT_NODE NAMES node nodejs DOC "Node.js for the server's end-to-end tests")

set(_e2e_tests server_e2e_openai server_e2e_chat_page)
set(_e2e_files openai.test.mjs chat_page.test.mjs)

if(NOT LMKIT_NODE)
  set(_missing ${CMAKE_CURRENT_BINARY_DIR}/node_missing.cmake)
  file(WRITE ${_missing}
       "message(FATAL_ERROR \"node was not found when CMake configured: run scripts/setup.sh \"\n"
       "  \"(Debian packages nodejs, npm, chromium), then reconfigure\")\n")
  foreach(_name IN LISTS _e2e_tests)
    add_test(NAME ${_name} COMMAND ${CMAKE_COMMAND} -P ${_missing})
  endforeach()
  return()
endif()

foreach(_name _file IN ZIP_LISTS _e2e_tests _e2e_files)
  add_test(NAME ${_name} COMMAND ${LMKIT_NODE} ${_js}/run.mjs ${_file} WORKING_DIRECTORY ${_js})
  set_tests_properties(${_name} PROPERTIES
    ENVIRONMENT "LMKIT_BIN=$<TARGET_FILE:lmkit>;LMKIT_SHARED_DIR_DEFAULT=${LMKIT_SHARED_DIR};LMKIT_SCREENSHOT=${PROJECT_BINARY_DIR}/server-chat-page.png"
    SKIP_RETURN_CODE 77
    TIMEOUT 600
    RUN_SERIAL TRUE
    LABELS "server;e2e")
endforeach()
