# syntax=docker/dockerfile:1
# Karaxas backend API: multi-stage build on the current Node LTS (slim Debian),
# production dependencies only, runs as the unprivileged `node` user.
# No secrets are baked in: the service reads Secret Manager references at boot
# (contract §9, *_SECRET_REF); Cloud Run sets PORT (8080) and runs the probes.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- deps: production dependencies, native addons compiled from source ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# argon2 must be compiled here: its shipped prebuilt binary crashed on our machines.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# node-gyp-build compiles instead of using a prebuild when this is set.
ENV npm_config_build_from_source=true
COPY package.json package-lock.json ./
# npm 11 runs install scripts only for the packages listed in package.json "allowScripts".
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/argon2/prebuilds \
 && test -f node_modules/argon2/build/Release/argon2.node \
 && npm cache clean --force

# ---- build: compile the TypeScript sources ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
ENV npm_config_build_from_source=true
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY app ./app
# tsc emits JavaScript only: carry the non-TypeScript assets (SQL migrations, static files) along.
RUN npm run build \
 && find app -type f ! -name '*.ts' -exec cp --parents {} dist/ \;

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Root-owned, read-only for the app user: the process cannot modify its own code.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
CMD ["node", "dist/app/main.js"]
