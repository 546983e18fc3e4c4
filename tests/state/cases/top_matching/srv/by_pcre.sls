by_pcre:
  test.nop
