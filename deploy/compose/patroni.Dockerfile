# PostgreSQL 15 managed by Patroni (Debian packages).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 patroni python3-etcd3 \
 && rm -rf /var/lib/apt/lists/*
COPY patroni.yml /etc/patroni.yml
COPY create-vault-db.sh /usr/local/bin/create-vault-db.sh
USER postgres
ENTRYPOINT ["patroni", "/etc/patroni.yml"]
