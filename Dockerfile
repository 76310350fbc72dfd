# The poi binary with its runtime libraries and models. Built by compose.yaml;
# no Docker engine runs on the development machines, so this file is
# exercised only where one does.
FROM golang:1.26-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ libfaiss-dev libturbojpeg0-dev libopenblas0-openmp nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh && go build -o /out/poi ./cmd/poi && cp -rL .assets/lib .assets/models /out/

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libturbojpeg0 libopenblas0-openmp libgomp1 liblapack3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/poi /usr/local/bin/poi
COPY --from=build /out/lib /opt/poi/lib
COPY --from=build /out/models /opt/poi/models
ENV POI_FACE_MODEL_DIR=/opt/poi/models POI_FACE_ORT_LIBRARY=/opt/poi/lib/libonnxruntime.so POI_DATA_DIR=/var/lib/poi
EXPOSE 8000
ENTRYPOINT ["poi"]
CMD ["run"]
