include:
  - .sub
  - req.other
changed:
  test.succeed_with_changes
unchanged:
  test.succeed_without_changes
failing:
  test.fail_without_changes:
    - order: first
watcher_fires:
  test.succeed_without_changes:
    - watch:
      - test: changed
watcher_quiet:
  test.succeed_without_changes:
    - watch:
      - test: unchanged
onchanges_runs:
  test.succeed_with_changes:
    - onchanges:
      - test: changed
onchanges_skipped:
  test.succeed_with_changes:
    - onchanges:
      - test: unchanged
onfail_runs:
  test.succeed_with_changes:
    - onfail:
      - test: failing
onfail_skipped:
  test.succeed_with_changes:
    - onfail:
      - test: unchanged
needs_failing:
  test.succeed_with_changes:
    - require:
      - test: failing
independent:
  test.succeed_without_changes:
    - order: last
any_ok:
  test.succeed_without_changes:
    - require_any:
      - test: failing
      - test: unchanged
cond_unless:
  cmd.run:
    - name: echo unless
    - unless: "true"
cond_onlyif:
  cmd.run:
    - name: echo onlyif
    - onlyif: "false"
cond_creates:
  cmd.run:
    - name: echo creates
    - creates: /
cond_runs:
  cmd.run:
    - names:
      - echo one
      - echo two:
        - cwd: /tmp
    - unless: "false"
in_forms:
  test.succeed_with_changes:
    - watch_in:
      - test: in_target
    - onchanges_in:
      - test: in_target2
in_target:
  test.succeed_without_changes
in_target2:
  test.succeed_without_changes
extend:
  sub_state:
    test:
      - comment: extended comment
exclude:
  - id: excluded_one
