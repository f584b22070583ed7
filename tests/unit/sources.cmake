set(GLASSBOX_UNIT_TEST_SOURCES kvmi_abi_test.cpp client_test.cpp)
