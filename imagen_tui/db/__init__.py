"""Everything that talks to PostgreSQL: where the server is (`connect`,
`embedded`), the schema (`migrate` and `migrations/*.sql`), the job queue
(`queue`) and the queries front ends need (`repositories`)."""
