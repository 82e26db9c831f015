#!/usr/bin/env bash
# Builds the Dubbo consumer: Maven Central dependencies copied beside the classes, so
# `java -cp 'target/classes:target/dependency/*' io.bizcloud.interop.ListProviders HOSTS IFACE` runs it.
set -euo pipefail
cd "$(dirname "$0")"
mvn -q -B compile dependency:copy-dependencies -DincludeScope=runtime
