#!/bin/sh
# Patroni's post_bootstrap: the `vault` role (password from the db_password secret) and its
# database. The vault's nodes create their tables themselves (numbered migrations under an
# advisory lock).
set -eu
pw=$(cat /run/secrets/db_password)
psql -v ON_ERROR_STOP=1 -d "$1" <<SQL
CREATE ROLE vault LOGIN PASSWORD '$pw';
CREATE DATABASE vault OWNER vault;
SQL
