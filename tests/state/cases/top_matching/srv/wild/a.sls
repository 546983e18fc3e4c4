wild_a:
  test.nop
