by_glob:
  test.nop
