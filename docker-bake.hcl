# The image for both CPU architectures the deploy targets, with the tags the deploy pulls:
#
#   docker buildx bake                      build linux/amd64 and linux/arm64 (into the build cache)
#   docker buildx bake --push               ... and push them as one multi-platform image
#   REGISTRY=123456789012.dkr.ecr.us-east-1.amazonaws.com/ TAG=v1 docker buildx bake --push
#   docker buildx bake local                this machine's platform only, loaded into `docker images`
#
# One image serves both roles (SERVICE_ROLE=api|worker, or the task definition's command), so
# there is one target. The deploy pulls `<image>:<imageTag>` (task-service:image, :imageTag); set
# IMAGE and TAG to match, REGISTRY to the ECR registry. arm64 is for Graviton tasks
# (task-service:architecture arm64) and Lambda's arm64; built on an amd64 host it runs the
# Dockerfile under QEMU emulation (`docker run --privileged --rm tonistiigi/binfmt --install arm64`),
# which is slow: a native arm64 builder is the quick way.

variable "REGISTRY" {
  default = ""
}

variable "IMAGE" {
  default = "lambda-ecs-tasks"
}

variable "TAG" {
  default = "latest"
}

# The Cargo profile (the Dockerfile's PROFILE argument).
variable "PROFILE" {
  default = "release"
}

group "default" {
  targets = ["image"]
}

target "image" {
  context    = "."
  dockerfile = "Dockerfile"
  platforms  = ["linux/amd64", "linux/arm64"]
  args = {
    PROFILE = PROFILE
  }
  tags = ["${REGISTRY}${IMAGE}:${TAG}"]
}

target "local" {
  inherits  = ["image"]
  platforms = []
  output    = ["type=docker"]
}
