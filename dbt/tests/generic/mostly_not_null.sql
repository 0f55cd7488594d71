{% test mostly_not_null(model, column_name, at_least) %}
-- One failing row when fewer than `at_least` (a share between 0 and 1) of the model's rows have a
-- value in column_name; an empty model passes. Like GX's `mostly`, for columns that may be missing
-- now and then but not for a large part of the catalogue.
with counts as (
    select count(*) as n_rows, count({{ column_name }}) as n_present
    from {{ model }}
)
select n_rows, n_present, n_present::double precision / n_rows as share_present
from counts
where n_rows > 0
  and n_present::double precision / n_rows < {{ at_least }}
{% endtest %}
