"""`gateway config`: every setting, its effective value, and where that value comes from."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from gateway_pipelines import settings

SECRET_FIELDS = {"database_url", "api_key", "read_token", "openai_api_key"}


def _shown(field: str, value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dg.ConfigurableResource):
        return f"<{type(value).__name__}>"
    text = str(value)
    if field in SECRET_FIELDS:
        return settings.mask("DATABASE_URL" if "url" in field else "TMDB_API_KEY", text) or "-"
    return text


def resource_rows(resources: Mapping[str, dg.ConfigurableResource], env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(resource.field, value, origin) for every field of every resource, as wired in defs/resources.py."""
    rows = []
    for name, resource in resources.items():
        for field, info in type(resource).model_fields.items():
            raw = getattr(resource, field)
            if isinstance(raw, dg.EnvVar):
                shown = _shown(field, env.get(raw.env_var_name))
                origin = f"env {raw.env_var_name}"
            else:
                shown = _shown(field, raw)
                origin = "default" if raw == info.default else "defs/resources.py"
                if field in ("gateway_home", "landing_dir", "models_dir", "artifacts_dir"):
                    origin = settings.origin("GATEWAY_HOME", env).replace("env ", "from env ") if settings.is_set(
                        "GATEWAY_HOME", env) else "from default GATEWAY_HOME"
            rows.append((f"{name}.{field}", shown, origin))
    return rows


def config_report(env: Mapping[str, str] | None = None, *, resolve: bool = True) -> str:
    from gateway_pipelines.defs.resources import build_resources

    env = settings.environment() if env is None else env
    lines = ["Environment (declared in gateway_pipelines/settings.py):"]
    for s in settings.SETTINGS:
        raw = (env.get(s.env) or "").strip()
        shown = settings.mask(s.env, raw) if raw else (s.default or "-")
        lines.append(f"  {s.env:<24} {shown:<44} {settings.origin(s.env, env):<22} {s.description}")
    lines += ["", "Resources (wired in gateway_pipelines/defs/resources.py; the UI's resource tab shows the same):"]
    resources = build_resources(env)
    for key, shown, origin in resource_rows(resources, env):
        lines.append(f"  {key:<34} {shown:<60} {origin}")
    lines += ["", "Derived:"]
    if resolve:
        from gateway_pipelines.lib.warehouse import redact_url
        from gateway_pipelines.runtime.instance import warehouse_urls

        urls = warehouse_urls(env)
        where = "embedded server in " + str(settings.gateway_home(env) / "pg") if urls.embedded else "env DATABASE_URL"
        lines.append(f"  {'warehouse':<34} {redact_url(urls.warehouse):<60} {where}")
        dagster_origin = "env DAGSTER_PG_URL" if settings.is_set("DAGSTER_PG_URL", env) else "database `dagster` beside the warehouse"
        lines.append(f"  {'dagster storage':<34} {redact_url(urls.dagster):<60} {dagster_origin}")
    else:
        lines.append("  (warehouse URL not resolved: --no-resolve)")
    from gateway_pipelines.lib.embeddings.factory import resolve_provider_kind

    # from the settings, not live resources: the report may describe another environment than ours
    kind = resolve_provider_kind(resources["embeddings"].provider, settings.value("OPENAI_API_KEY", env))
    api = "on" if settings.is_set("TMDB_API_KEY", env) or settings.is_set("TMDB_READ_TOKEN", env) else "off"
    why = {"openai": "OPENAI_API_KEY is set", "wordllama": "GATEWAY_EMBED_PROVIDER=wordllama: its shipped weights"
           }.get(kind, "no OPENAI_API_KEY: local TF-IDF + SVD model")
    lines.append(f"  {'embedding provider':<34} {kind:<60} {why}")
    lines.append(f"  {'TMDB API':<34} {api:<60} {'a key or token is set' if api == 'on' else 'no TMDB_API_KEY / TMDB_READ_TOKEN'}")
    return "\n".join(lines)
