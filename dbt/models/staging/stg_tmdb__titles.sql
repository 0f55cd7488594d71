-- Typed columns out of the TMDB payload. Movies and TV share one shape here: TV's name,
-- first_air_date and episode_run_time map onto title, release_date and runtime.
-- Two runs at once (two `gateway run`s, or a sensor run beside a backfill) would each delete and
-- insert the same keys and leave duplicates. The pre-hook runs inside the model's transaction, so
-- the advisory lock serialises whole builds of this model across processes; the unique index
-- turns any other way to a duplicate into an error instead of bad data.
{{ config(
    materialized='incremental',
    unique_key='content_key',
    incremental_strategy='delete+insert',
    on_schema_change='sync_all_columns',
    pre_hook="select pg_advisory_xact_lock(hashtextextended('{{ this }}', 0))",
    post_hook="create unique index if not exists stg_tmdb__titles_content_key_uq on {{ this }} (content_key)"
) }}

with source as (
    select *
    from {{ source('raw', 'tmdb_titles') }}
    {#- The run's window comes as environment variables, not --vars: dbt would re-parse the whole
        project for every new value of a var, and that is most of a small build's time. -#}
    {% if is_incremental() and env_var('GATEWAY_DBT_MIN_DATE', '') != '' %}
    where partition_date between '{{ env_var("GATEWAY_DBT_MIN_DATE") }}'::date and '{{ env_var("GATEWAY_DBT_MAX_DATE") }}'::date
    {% endif %}
),

typed as (
    select
        media_type || '-' || id                                              as content_key,
        id                                                                   as tmdb_id,
        media_type,
        coalesce(nullif(payload->>'title', ''), nullif(payload->>'name', ''),
                 nullif(payload->>'original_title', ''), payload->>'original_name') as title,
        coalesce(payload->>'original_title', payload->>'original_name')      as original_title,
        nullif(payload->>'overview', '')                                     as overview,
        nullif(payload->>'tagline', '')                                      as tagline,
        coalesce(
            array(
                select (g->>'id')::int
                from jsonb_array_elements(
                    case when jsonb_typeof(payload->'genres') = 'array' then payload->'genres' else '[]'::jsonb end
                ) with ordinality as t(g, ord)
                order by ord
            ), '{}'::int[])                                                  as genre_ids,
        coalesce(
            array(
                select k->>'name'
                from jsonb_array_elements(
                    coalesce(payload->'keywords'->'keywords', payload->'keywords'->'results', '[]'::jsonb)
                ) with ordinality as t(k, ord)
                order by ord
            ), '{}'::text[])                                                 as keywords,
        nullif(coalesce(payload->>'release_date', payload->>'first_air_date'), '')::date as release_date,
        coalesce((payload->>'runtime')::int, (payload->'episode_run_time'->>0)::int)     as runtime,
        (payload->>'vote_average')::double precision                         as vote_average,
        (payload->>'vote_count')::int                                        as vote_count,
        (payload->>'popularity')::double precision                           as popularity,
        nullif(payload->>'original_language', '')                            as original_language,
        nullif(payload->>'poster_path', '')                                  as poster_path,
        nullif(payload->>'status', '')                                       as status,
        content_hash,
        source,
        partition_date,
        fetched_at
    from source
)

select
    *,
    extract(year from release_date)::int as year
from typed
