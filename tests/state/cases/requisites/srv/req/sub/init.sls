sub_state:
  test.succeed_without_changes:
    - comment: original
excluded_one:
  test.fail_without_changes
