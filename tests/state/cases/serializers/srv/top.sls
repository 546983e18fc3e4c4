base:
  '*':
    - car
