-- One row per title the platform can recommend, with genre names for people and ids for vectors.
select
    t.content_key,
    t.tmdb_id,
    t.media_type,
    t.title,
    t.original_title,
    t.overview,
    t.tagline,
    t.genre_ids,
    coalesce(
        array(
            select g.name
            from unnest(t.genre_ids) with ordinality as u(genre_id, ord)
            join {{ source('raw', 'tmdb_genres') }} as g
              on g.genre_id = u.genre_id and g.media_type = t.media_type
            order by u.ord
        ), '{}'::text[])                     as genre_names,
    t.keywords,
    t.release_date,
    t.year,
    t.runtime,
    t.vote_average,
    t.vote_count,
    t.popularity,
    t.original_language,
    t.poster_path,
    t.status,
    t.content_hash as source_hash,
    t.partition_date,
    t.fetched_at
from {{ ref('stg_tmdb__titles') }} as t
where t.title is not null
