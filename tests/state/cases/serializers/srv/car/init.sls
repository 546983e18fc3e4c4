{% import_yaml 'defaults/loggers.yaml' as loggers %}
{% import_json 'defaults/limits.json' as limits %}
{% import_text tpldir ~ '/motd.txt' as motd %}
{% import_yaml tpldir ~ '/local.yaml' as local %}
{% load_yaml as extra %}
level: {{ grains['role'] }}
count: 2
{% endload %}
{% load_json as jextra %}
{"speed": {{ limits.max_speed }}}
{% endload %}
{% load_text as banner %}Hello {{ grains['id'] }}{% endload %}
{% for name, every in loggers.intervals | dictsort %}
logger {{ name }}:
  test.succeed_without_changes:
    - name: {{ name }} every {{ every }} s for {{ loggers.owner }}
{% endfor %}
limits:
  test.succeed_without_changes:
    - name: rpm {{ limits.max_rpm }} speed {{ jextra.speed }}
motd:
  test.succeed_without_changes:
    - name: {{ motd | trim }} / {{ banner }}
local:
  test.succeed_without_changes:
    - name: {{ local.colour }} {{ extra.level }} {{ extra.count }}
