{% for n in range(2) %}
loop_{{ n }}:
  test.show_notification:
    - text: "n is {{ n }} for {{ grains['role'] }} on {{ salt['grains.get']('id') }} ({{ pillar.get('fleet', 'none') }})"
{% endfor %}
