base:
  'car-*':
    - by_glob
  'role:logger':
    - match: grain
    - by_grain
  'car-0001,car-0002':
    - match: list
    - by_list
  'car-\d{4}':
    - match: pcre
    - by_pcre
  'G@role:logger and car-* and not G@role:gateway':
    - by_compound
  'fleet:berlin':
    - match: pillar
    - by_pillar
  'truck-*':
    - never
  '*':
    - dev: dev_only
    - wild.*
dev:
  '*':
    - dev_base_section
