base:
  '*':
    - broken
