base:
  '*':
    - ordering
    - more
