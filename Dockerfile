# budgetd: the gRPC budget-authorization daemon, with its embedded SQLite database on /data.
#
#   docker build -t budgetd .
#   docker run -p 50051:50051 -p 9464:9464 -v budgetd-data:/data \
#       -e BUDGETD_ADMIN_TOKEN=change-me budgetd
#
# For replicas sharing PostgreSQL, set BUDGETD_DATABASE_URL=postgresql://... and run
# `budgetd migrate` once before starting them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf /src/build /src/*.egg-info

RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home budgetd \
    && mkdir -p /data \
    && chown budgetd:budgetd /data
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001

ENV BUDGETD_DATABASE_URL=sqlite:////data/budgetd.db \
    BUDGETD_GRPC_ADDR=0.0.0.0:50051 \
    BUDGETD_METRICS_ADDR=0.0.0.0:9464

EXPOSE 50051 9464

# grpc.health.v1 Check against the local gRPC port; exits 0 only when the server is SERVING.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;a='127.0.0.1:'+os.environ['BUDGETD_GRPC_ADDR'].rpartition(':')[2];sys.exit(g.HealthStub(grpc.insecure_channel(a)).Check(h.HealthCheckRequest(),timeout=4).status!=h.HealthCheckResponse.SERVING)"]

CMD ["budgetd", "serve"]
