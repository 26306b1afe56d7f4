# oidc-provider (a certified OpenID Connect implementation) standing in for VNeID.
FROM node:20-bookworm-slim
WORKDIR /oidc
RUN npm install --omit=dev oidc-provider@8
COPY oidc.mjs .
USER node
CMD ["node", "oidc.mjs"]
