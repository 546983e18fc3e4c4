dev_base_section:
  test.nop
