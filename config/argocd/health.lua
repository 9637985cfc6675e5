-- Argo CD health check for EcsCluster, EcsTaskDefinition, EcsService, EcsTask, EcsTaskSchedule and EcsCapacityProvider
-- (resource.customizations.health.ecs.operator.dev_<Kind> in argocd-cm; see README).
-- Stalled -> Degraded, a deployment paused for an approval -> Suspended (Argo's word for a
-- paused rollout), Ready=True for the current generation -> Healthy, else Progressing.
local hs = {}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting"
  return hs
end
local status = obj.status or {}
local conditions = status.conditions or {}
local current = status.observedGeneration ~= nil and obj.metadata ~= nil
  and status.observedGeneration == obj.metadata.generation
for _, condition in ipairs(conditions) do
  if condition.type == "Stalled" and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = condition.message
    return hs
  end
end
for _, condition in ipairs(conditions) do
  if condition.type == "Ready" and condition.status == "False" and condition.reason == "AwaitingApproval" then
    hs.status = "Suspended"
    hs.message = condition.message
    return hs
  end
end
for _, condition in ipairs(conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" and current then
      hs.status = "Healthy"
    else
      hs.status = "Progressing"
    end
    hs.message = condition.message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the operator to observe the object"
return hs
