more_one:
  test.nop
more_two:
  test.succeed_with_changes:
    - require:
      - test: more_o*
      - plain_a
