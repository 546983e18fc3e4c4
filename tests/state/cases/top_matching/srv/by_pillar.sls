by_pillar:
  test.nop
