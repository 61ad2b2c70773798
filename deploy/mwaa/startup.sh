#!/bin/sh
# MWAA startup script (s3://<bucket>/startup.sh): every Airflow component sources it before it starts,
# and the variables it exports stay set (images/airflow/3.3.1/bin/airflow-user/execute-user-startup-script
# in aws/amazon-mwaa-docker-images). The pipeline's configuration ships inside the DAGs folder, as
# dags/include/ (MWAA syncs only dags/, plugins.zip and requirements.txt), so point the package at it.
export MARKET_INGEST_INCLUDE_DIR="${AIRFLOW_HOME:-/usr/local/airflow}/dags/include"
