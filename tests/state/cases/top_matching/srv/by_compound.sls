by_compound:
  test.nop
