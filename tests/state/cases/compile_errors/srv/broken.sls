missing_ref:
  test.nop:
    - require:
      - test: does_not_exist
two_functions:
  test:
    - nop
    - succeed_with_changes
not_a_list:
  test.nop:
    require: nothing
bad_requisite_form:
  test.nop:
    - require: just_a_string
