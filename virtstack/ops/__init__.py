"""The library layer behind the `virtstack` command: everything the CLI does, without click.

Modules:
    project     -- project root, stack names, which stack file a stack uses, the engine's environment.
    engine      -- the Pulumi Automation API: preview, up, refresh preview, destroy, outputs, interrupt.
    resources   -- PURE: which VM or host an engine resource belongs to, and what it is.
    classify    -- PURE: engine preview events -> a Plan in words a VM owner understands.
    drift       -- PURE: refresh-preview events -> what differs from the desired state, per VM.
    render      -- Plan and Drift as table, JSON or markdown.
    progress    -- live progress lines from engine events during up/destroy.
    apply       -- the `up` and `destroy` flows: plan, check for data loss, confirm, apply the plan.
    inventory   -- Ansible, ssh-config and JSON inventories from a stack's outputs.
    validation  -- spec validation and the placement table (no engine, no libvirt).
    schema      -- JSON Schema of the stack file.
    logs        -- log files for engine runs and unexpected errors.
    errors      -- the VirtstackError subclasses raised here.
"""
