wild_b:
  test.nop
