"""The five views (Costs, Activity, Files, Mappings, Sync) and the modal screens."""
