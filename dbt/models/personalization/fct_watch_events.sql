-- The watch-event fact: every event of the catalogue's titles, ordered per user by time, with the
-- title's media type and the event's position in the user's history. What the preference vectors,
-- the recommender's exclusions and co-occurrence, and the offline evaluation read.
{{ config(materialized='table', indexes=[{'columns': ['user_id', 'ts']}, {'columns': ['source']}]) }}

select
    e.event_id,
    e.source,
    e.user_id,
    e.content_key,
    split_part(e.content_key, '-', 1)                                              as media_type,
    e.event_type,
    e.completion,
    e.rating,
    e.duration_s,
    e.total_duration_s,
    e.is_rewatch,
    e.device,
    e.ts,
    e.event_date,
    e.impression_id,
    e.is_watch,
    e.is_finished,
    row_number() over (partition by e.user_id order by e.ts, e.event_id)::int      as user_event_seq,
    e.ingested_at
from {{ ref('stg_watch_events') }} as e
