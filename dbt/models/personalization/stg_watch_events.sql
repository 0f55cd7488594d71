-- Typed watch events over raw.watch_events: one row per distinct event, with the derived flags the
-- preference rule and the recommender read. A view: the raw table is already typed and deduplicated.
{{ config(materialized='view') }}

select
    event_id,
    source,
    user_id,
    content_key,
    event_type,
    completion,
    rating,
    duration_s,
    total_duration_s,
    is_rewatch,
    device,
    ts,
    event_date,
    impression_id,
    event_type in ('play', 'progress', 'complete', 'rate')                          as is_watch,
    -- finished: a complete or rate event, or a watch with completion >= 0.7 (the media gateway's success line)
    (event_type in ('complete', 'rate')
        or (event_type in ('play', 'progress') and coalesce(completion, 0) >= 0.7))  as is_finished,
    file_name,
    ingested_at
from {{ source('raw', 'watch_events') }}
