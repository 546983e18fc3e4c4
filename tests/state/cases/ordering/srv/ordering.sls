late_but_required:
  test.succeed_without_changes:
    - order: 20
early_requirer:
  test.succeed_without_changes:
    - order: 2
    - require:
      - test: late_but_required
absolutely_last:
  test.nop:
    - order: last
negative_one:
  test.nop:
    - order: -1
very_first:
  test.nop:
    - order: first
plain_a:
  test.succeed_with_changes
plain_b:
  test.nop:
    - names:
      - name_z
      - name_a
      - name_m
watched_by_glob:
  test.succeed_with_changes:
    - watch_in:
      - test: glob_watcher
glob_watcher:
  test.succeed_without_changes
sls_requirer:
  test.succeed_without_changes:
    - require:
      - sls: more
