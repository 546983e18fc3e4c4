by_list:
  test.nop
