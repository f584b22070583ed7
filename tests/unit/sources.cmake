set(GLASSBOX_UNIT_TEST_SOURCES kvmi_abi_test.cpp client_test.cpp ctl_parse_test.cpp ctl_format_test.cpp)
