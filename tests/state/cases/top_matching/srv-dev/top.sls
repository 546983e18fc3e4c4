dev:
  '*':
    - ignored_because_base_defines_dev
