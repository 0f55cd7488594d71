"""dbt over the warehouse: the resource that connects dbt to the run's Postgres."""
