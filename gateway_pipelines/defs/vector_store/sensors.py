import dagster as dg

from gateway_pipelines.lib.vector_store.index import index_status
from gateway_pipelines.lib.warehouse import WarehouseResource, WarehouseError

# Incremental inserts keep an HNSW graph valid but, past this share of the table, it was built
# for a different table: rebuild it so recall and build-time parameters hold again.
DRIFT_REBUILD_FRACTION = 0.3


def drift_run_request(status, threshold: float = DRIFT_REBUILD_FRACTION) -> dg.RunRequest | dg.SkipReason:
    if not status.exists or not status.valid:
        reason = "missing" if not status.exists else "invalid"
    elif status.drift_fraction is not None and status.drift_fraction > threshold:
        reason = f"drift {status.drift_fraction:.0%}"
    else:
        drift = "unknown" if status.drift_fraction is None else f"{status.drift_fraction:.1%}"
        return dg.SkipReason(f"index healthy: drift {drift} (rebuild above {threshold:.0%})")
    built = status.last_built_at.isoformat() if status.last_built_at else "never"
    return dg.RunRequest(
        # one rebuild per (last build, table size): a new build changes the key
        run_key=f"rebuild:{built}:{status.rows_now}",
        run_config={"ops": {"content_vectors": {"config": {"force_index_rebuild": True}}}},
        tags={"gateway/reason": f"index {reason}"},
    )


@dg.sensor(
    target=dg.AssetSelection.assets("content_vectors"),
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the HNSW index when it is missing or invalid, or when the table has changed by more "
    f"than {DRIFT_REBUILD_FRACTION:.0%} since the last build (meta.index_builds).",
)
def content_vectors_drift_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    try:
        with warehouse.connection() as conn:
            status = index_status(conn)
    except WarehouseError as exc:
        return dg.SkipReason(f"warehouse unavailable: {exc}")
    except Exception as exc:  # e.g. not migrated yet: the sensor must not crash-loop the daemon
        return dg.SkipReason(f"cannot read index status yet ({type(exc).__name__}: {exc})")
    return drift_run_request(status)
