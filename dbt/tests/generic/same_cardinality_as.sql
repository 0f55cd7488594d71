{% test same_cardinality_as(model, column_name, other_column) %}
-- Rows whose array column_name has a different number of elements than the array other_column
-- (a null array counts as empty), e.g. names looked up for ids where some id found no name.
select {{ column_name }}, {{ other_column }}
from {{ model }}
where coalesce(cardinality({{ column_name }}), 0) <> coalesce(cardinality({{ other_column }}), 0)
{% endtest %}
