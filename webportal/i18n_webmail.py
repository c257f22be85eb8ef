"""German and French for the webmail: folders, messages, compose, search, autoresponder
(merged into webportal.i18n.CATALOGS)."""

from __future__ import annotations

DE: dict[str, str] = {
    "---------- Forwarded message ----------": "---------- Weitergeleitete Nachricht ----------",
    "A message can have at most {limit} recipients.": (
        "Eine Nachricht kann höchstens {limit} Empfänger haben."
    ),
    "Activate": "Aktivieren",
    "Active (switches off the other away messages of this address)": (
        "Aktiv (schaltet die anderen Abwesenheitsnotizen dieser Adresse aus)"
    ),
    "Add at least one recipient.": "Geben Sie mindestens einen Empfänger an.",
    "All folders": "Alle Ordner",
    "All secure-page messages": "Alle Nachrichten über sichere Seiten",
    "Answer from": "Antworten von",
    "Attachments of the original": "Anhänge der ursprünglichen Nachricht",
    "Autoresponder": "Abwesenheitsnotiz",
    "Away message": "Abwesenheitsnotiz",
    "Away message “{name}”": "Abwesenheitsnotiz „{name}“",
    "Away messages answer mail to one of your addresses automatically. Each address can"
    " keep several; one at a time is active. A sender gets the answer at most once in 7"
    " days; mailing lists, bulk mail, automatic mail and mail that names none of your"
    " addresses in To or Cc (a Bcc) never get one.": (
        "Abwesenheitsnotizen beantworten E-Mails an eine Ihrer Adressen automatisch. Jede"
        " Adresse kann mehrere speichern; aktiv ist jeweils eine. Ein Absender erhält die"
        " Antwort höchstens einmal in 7 Tagen; Mailinglisten, Massen-E-Mails, automatische"
        " E-Mails und E-Mails, die keine Ihrer Adressen in An oder Kopie nennen (eine"
        " Blindkopie), erhalten nie eine."
    ),
    "Bcc": "Blindkopie",
    "Cancel": "Abbrechen",
    "Choose at least one weekday.": "Wählen Sie mindestens einen Wochentag.",
    "Choose one of your addresses to answer from.": (
        "Wählen Sie eine Ihrer Adressen als Absender der Antwort."
    ),
    "Copied": "Kopiert",
    "Copy": "Kopieren",
    "Delete": "Löschen",
    "Delete for good": "Endgültig löschen",
    "Delete this away message?": "Diese Abwesenheitsnotiz löschen?",
    "Delete this message for good?": "Diese Nachricht endgültig löschen?",
    "Drafts": "Entwürfe",
    "Encrypt": "Verschlüsseln",
    "Encrypt this message": "Diese Nachricht verschlüsseln",
    "Encrypt this message?": "Diese Nachricht verschlüsseln?",
    "Encrypted messages match on their subject only: their text is never indexed. For"
    " messages that were not encrypted, the text is searched too.": (
        "Verschlüsselte Nachrichten werden nur über ihren Betreff gefunden: ihr Text wird nie"
        " indiziert. Bei unverschlüsselten Nachrichten wird auch der Text durchsucht."
    ),
    "Encrypted. Click to send without encryption.": (
        "Verschlüsselt. Klicken, um ohne Verschlüsselung zu senden."
    ),
    "Encryption": "Verschlüsselung",
    "End (UTC)": "Ende (UTC)",
    "Enter dates as YYYY-MM-DD.": "Geben Sie Daten als JJJJ-MM-TT ein.",
    "Enter start and end as date and time.": "Geben Sie Beginn und Ende als Datum und Uhrzeit ein.",
    "Expires on {date} for {count} recipient(s) with a password.": (
        "Läuft am {date} ab, für {count} Empfänger mit Passwort."
    ),
    "Folder": "Ordner",
    "For {address}. Times are in UTC.": "Für {address}. Zeiten in UTC.",
    "Forgotten: {count} sender(s) get the away message again.": (
        "Vergessen: {count} Absender erhalten die Abwesenheitsnotiz wieder."
    ),
    "Forward": "Weiterleiten",
    "Friday": "Freitag",
    "From date": "Ab Datum",
    "Give the message a name.": "Geben Sie der Nachricht einen Namen.",
    "Has an OpenPGP key: {fingerprint}": "Hat einen OpenPGP-Schlüssel: {fingerprint}",
    "Hosted here: receives it encrypted, nothing to do": (
        "Hier gehostet: erhält sie verschlüsselt, nichts zu tun"
    ),
    "Mail": "E-Mail",
    "Mail folders": "E-Mail-Ordner",
    "Mailbox": "Postfach",
    "Make another": "Neues erzeugen",
    "Message": "Nachricht",
    "Monday": "Montag",
    "Move": "Verschieben",
    "Move to": "Verschieben nach",
    "Never answer": "Nie antworten an",
    "New away message": "Neue Abwesenheitsnotiz",
    "No away message saved for this address.": (
        "Für diese Adresse ist keine Abwesenheitsnotiz gespeichert."
    ),
    "No key: gets a link to a secure page and needs a password": (
        "Kein Schlüssel: erhält einen Link zu einer sicheren Seite und braucht ein Passwort"
    ),
    "Not a valid mail address": "Keine gültige E-Mail-Adresse",
    "Not encrypted": "Nicht verschlüsselt",
    "Not encrypted. Click to encrypt this message.": (
        "Nicht verschlüsselt. Klicken, um diese Nachricht zu verschlüsseln."
    ),
    "Not signed.": "Nicht signiert.",
    "Note the password now and tell it to the recipients another way (by phone, for"
    " example): it cannot be shown again after sending.": (
        "Notieren Sie das Passwort jetzt und teilen Sie es den Empfängern auf anderem Weg mit"
        " (zum Beispiel am Telefon): nach dem Senden kann es nicht mehr angezeigt werden."
    ),
    "On {date}, {sender} wrote:": "Am {date} schrieb {sender}:",
    "One address per line, or a whole domain written as @domain.": (
        "Eine Adresse pro Zeile, oder eine ganze Domain als @domain."
    ),
    "Password for recipients without a key": "Passwort für Empfänger ohne Schlüssel",
    "Password set for recipients without a key.": "Passwort für Empfänger ohne Schlüssel gesetzt.",
    "Please attach your files again.": "Bitte hängen Sie Ihre Dateien erneut an.",
    "Your text held {count} NUL character(s), an invisible control character that mail"
    " cannot carry. Each is now shown as � in your text: check it and send it again.": (
        "Ihr Text enthielt {count} NUL-Zeichen, ein unsichtbares Steuerzeichen, das E-Mail"
        " nicht transportieren kann. Jedes wird in Ihrem Text als � angezeigt: prüfen Sie"
        " ihn und senden Sie ihn noch einmal."
    ),
    "Recipients hosted here and recipients with an OpenPGP key get the message encrypted."
    " Everyone else gets a link to a secure page that opens with a password you set.": (
        "Hier gehostete Empfänger und Empfänger mit OpenPGP-Schlüssel erhalten die Nachricht"
        " verschlüsselt. Alle anderen erhalten einen Link zu einer sicheren Seite, die sich mit"
        " einem von Ihnen festgelegten Passwort öffnet."
    ),
    "Recipients without a key get a link to a secure page that opens with this password."
    " Tell them the password another way. It cannot be shown again after sending.": (
        "Empfänger ohne Schlüssel erhalten einen Link zu einer sicheren Seite, die sich mit"
        " diesem Passwort öffnet. Teilen Sie ihnen das Passwort auf anderem Weg mit. Nach dem"
        " Senden kann es nicht mehr angezeigt werden."
    ),
    "Reply": "Antworten",
    "Reply all": "Allen antworten",
    "Reset: answer everyone again": "Zurücksetzen: allen wieder antworten",
    "Saturday": "Samstag",
    "Save draft": "Entwurf speichern",
    "Search": "Suche",
    "Secure page": "Sichere Seite",
    "Send": "Senden",
    "Sent": "Gesendet",
    "Sent without encryption while the lock is open": (
        "Wird unverschlüsselt gesendet, solange das Schloss offen ist"
    ),
    "Separate several addresses with commas.": "Trennen Sie mehrere Adressen durch Kommas.",
    "Set a password for the recipients without a key.": (
        "Legen Sie ein Passwort für die Empfänger ohne Schlüssel fest."
    ),
    "Show or change": "Anzeigen oder ändern",
    "Signed by the sender: the signature is valid.": (
        "Vom Absender signiert: die Signatur ist gültig."
    ),
    "Signed by the sender: the signature is valid for the text only; the subject, date"
    " and recipients shown are not signed.": (
        "Vom Absender signiert: die Signatur gilt nur für den Text; Betreff, Datum und"
        " Empfänger, wie angezeigt, sind nicht signiert."
    ),
    "Signed by the sender, but the message arrived with other header fields (another"
    " subject or other recipients, for example) than the signed ones shown here: someone"
    " may have passed on a message that was written for someone else.": (
        "Vom Absender signiert, aber die Nachricht kam mit anderen Kopfzeilen an (etwa einem"
        " anderen Betreff oder anderen Empfängern) als den hier angezeigten signierten:"
        " vielleicht hat jemand eine Nachricht weitergeschickt, die für jemand anderen"
        " geschrieben wurde."
    ),
    "Signed, but it arrived with other header fields": (
        "Signiert, aber mit anderen Kopfzeilen angekommen"
    ),
    "Signed by {signer}, but sent as {sender}.": (
        "Signiert von {signer}, aber gesendet als {sender}."
    ),
    "Signed with a key this server does not know.": (
        "Mit einem Schlüssel signiert, den dieser Server nicht kennt."
    ),
    "Start (UTC)": "Beginn (UTC)",
    "Sunday": "Sonntag",
    "Switch off": "Ausschalten",
    "The attachments are larger than {limit} bytes.": "Die Anhänge sind größer als {limit} Bytes.",
    "The text is longer than {limit} characters: please shorten it.": (
        "Der Text ist länger als {limit} Zeichen: Bitte kürzen Sie ihn."
    ),
    "This message was sent already: it is in your Sent folder, and was not sent again."
    " To send it once more, press Send again.": (
        "Diese Nachricht wurde bereits gesendet: Sie ist in Ihrem Ordner Gesendet und wurde"
        " nicht noch einmal gesendet. Um sie erneut zu senden, klicken Sie noch einmal auf"
        " Senden."
    ),
    "The away message for {address} is switched off.": (
        "Die Abwesenheitsnotiz für {address} ist ausgeschaltet."
    ),
    "The away message was deleted.": "Die Abwesenheitsnotiz wurde gelöscht.",
    "The away message was saved.": "Die Abwesenheitsnotiz wurde gespeichert.",
    "The draft was saved, encrypted to your key.": (
        "Der Entwurf wurde gespeichert, verschlüsselt mit Ihrem Schlüssel."
    ),
    "The end must be after the start.": "Das Ende muss nach dem Beginn liegen.",
    "The message could not be sent. Please try again in a moment.": (
        "Die Nachricht konnte nicht gesendet werden. Bitte versuchen Sie es gleich noch einmal."
    ),
    "The message is larger than {limit} bytes.": "Die Nachricht ist größer als {limit} Bytes.",
    "Message too large": "Nachricht zu groß",
    "Not kept: {files}.": "Nicht übernommen: {files}.",
    "The message is too large: it may hold at most {size} in all, its attachments at most"
    " {attachments} together. Nothing was sent.": (
        "Die Nachricht ist zu groß: sie darf insgesamt höchstens {size} umfassen, ihre Anhänge"
        " zusammen höchstens {attachments}. Es wurde nichts gesendet."
    ),
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Nothing was sent. Go back to it with your browser's Back button and"
    " attach fewer or smaller files.": (
        "Die Nachricht ist zu groß: Text und Anhänge dürfen zusammen höchstens {size} umfassen."
        " Es wurde nichts gesendet. Gehen Sie mit der Zurück-Schaltfläche Ihres Browsers zur"
        " Nachricht zurück und hängen Sie weniger oder kleinere Dateien an."
    ),
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Remove attachments or shorten the text.": (
        "Die Nachricht ist zu groß: Text und Anhänge dürfen zusammen höchstens {size} umfassen."
        " Entfernen Sie Anhänge oder kürzen Sie den Text."
    ),
    "The message was deleted for good.": "Die Nachricht wurde endgültig gelöscht.",
    "The message was moved to the trash.": "Die Nachricht wurde in den Papierkorb verschoben.",
    "The message was moved to {folder}.": "Die Nachricht wurde nach {folder} verschoben.",
    "The message was not sent: {reason}": "Die Nachricht wurde nicht gesendet: {reason}",
    "The original subject is added after it.": "Der ursprüngliche Betreff wird angehängt.",
    "The signature does not match: the message may have been changed.": (
        "Die Signatur passt nicht: die Nachricht wurde möglicherweise verändert."
    ),
    "There is no mailbox {address} here.": "Hier gibt es kein Postfach {address}.",
    "There is no such mailbox here": "Dieses Postfach gibt es hier nicht",
    "These recipients have no key and need a password for their secure page: {addresses}."
    " A password was suggested below; note it before sending.": (
        "Diese Empfänger haben keinen Schlüssel und brauchen ein Passwort für ihre sichere"
        " Seite: {addresses}. Unten wurde ein Passwort vorgeschlagen; notieren Sie es vor dem"
        " Senden."
    ),
    "These recipients have no key. They get a link to a secure page that opens with this"
    " password:": (
        "Diese Empfänger haben keinen Schlüssel. Sie erhalten einen Link zu einer sicheren"
        " Seite, die sich mit diesem Passwort öffnet:"
    ),
    "This message cannot be decrypted with your keys.": (
        "Diese Nachricht lässt sich mit Ihren Schlüsseln nicht entschlüsseln."
    ),
    "The server is busy with many large messages right now; nothing was sent."
    " Please try again in a minute.": (
        "Der Server ist gerade mit vielen großen Nachrichten beschäftigt; es wurde nichts"
        " gesendet. Bitte versuchen Sie es in einer Minute noch einmal."
    ),
    "This message cannot be shown: it is too large or too complex to open safely."
    " Your administrator can see it in the server log.": (
        "Diese Nachricht kann nicht angezeigt werden: Sie ist zu groß oder zu komplex, um"
        " sie sicher zu öffnen. Ihr Administrator sieht sie im Serverprotokoll."
    ),
    "Thursday": "Donnerstag",
    "Trash": "Papierkorb",
    "Tuesday": "Dienstag",
    "Until date": "Bis Datum",
    "Use this password": "Dieses Passwort verwenden",
    "Wednesday": "Mittwoch",
    "Weekdays": "Wochentage",
    "When": "Wann",
    "Words": "Wörter",
    "Write": "Schreiben",
    "Write a message": "Nachricht schreiben",
    "Write a subject.": "Geben Sie einen Betreff ein.",
    "Write the message.": "Schreiben Sie die Nachricht.",
    "You cannot send from {address}.": "Sie können nicht von {address} senden.",
    "Your message was sent.": "Ihre Nachricht wurde gesendet.",
    "Your message was sent. {count} recipient(s) get a link to a secure page: give them the"
    " password another way (by phone, for example).": (
        "Ihre Nachricht wurde gesendet. {count} Empfänger erhalten einen Link zu einer sicheren"
        " Seite: teilen Sie ihnen das Passwort auf anderem Weg mit (zum Beispiel am Telefon)."
    ),
    "any time": "jederzeit",
    "every day": "jeden Tag",
    "from {date}": "ab {date}",
    "hosted": "gehostet",
    "invalid": "ungültig",
    "key": "Schlüssel",
    "looking up…": "wird gesucht…",
    "needs a password": "braucht ein Passwort",
    "no such mailbox": "kein solches Postfach",
    "off": "aus",
    "until {date}": "bis {date}",
    "{address} is not a valid mail address.": "{address} ist keine gültige E-Mail-Adresse.",
    "A header field of this message could not be written safely.": (
        "Ein Kopffeld dieser Nachricht konnte nicht sicher geschrieben werden."
    ),
    "{count} message(s) found": "{count} Nachricht(en) gefunden",
    "{count} sender(s) answered in the last 7 days.": (
        "{count} Absender in den letzten 7 Tagen beantwortet."
    ),
    "{field} is too long.": "{field} ist zu lang.",
    "“{entry}” is neither an address nor a domain written as @domain.": (
        "„{entry}“ ist weder eine Adresse noch eine als @domain geschriebene Domain."
    ),
    "“{name}” is now the active away message for {address}.": (
        "„{name}“ ist jetzt die aktive Abwesenheitsnotiz für {address}."
    ),
}

FR: dict[str, str] = {
    "---------- Forwarded message ----------": "---------- Message transféré ----------",
    "A message can have at most {limit} recipients.": (
        "Un message peut avoir au plus {limit} destinataires."
    ),
    "Activate": "Activer",
    "Active (switches off the other away messages of this address)": (
        "Actif (désactive les autres messages d'absence de cette adresse)"
    ),
    "Add at least one recipient.": "Ajoutez au moins un destinataire.",
    "All folders": "Tous les dossiers",
    "All secure-page messages": "Tous les messages par page sécurisée",
    "Answer from": "Répondre depuis",
    "Attachments of the original": "Pièces jointes du message d'origine",
    "Autoresponder": "Répondeur automatique",
    "Away message": "Message d'absence",
    "Away message “{name}”": "Message d'absence « {name} »",
    "Away messages answer mail to one of your addresses automatically. Each address can"
    " keep several; one at a time is active. A sender gets the answer at most once in 7"
    " days; mailing lists, bulk mail, automatic mail and mail that names none of your"
    " addresses in To or Cc (a Bcc) never get one.": (
        "Les messages d'absence répondent automatiquement aux e-mails reçus par l'une de vos"
        " adresses. Chaque adresse peut en garder plusieurs ; un seul est actif à la fois. Un"
        " expéditeur reçoit la réponse au plus une fois en 7 jours ; les listes de diffusion,"
        " les envois en masse, les e-mails automatiques et ceux qui ne nomment aucune de vos"
        " adresses en À ou Cc (une Cci) n'en reçoivent jamais."
    ),
    "Bcc": "Cci",
    "Cancel": "Annuler",
    "Choose at least one weekday.": "Choisissez au moins un jour de la semaine.",
    "Choose one of your addresses to answer from.": (
        "Choisissez l'une de vos adresses comme expéditeur de la réponse."
    ),
    "Copied": "Copié",
    "Copy": "Copier",
    "Delete": "Supprimer",
    "Delete for good": "Supprimer définitivement",
    "Delete this away message?": "Supprimer ce message d'absence ?",
    "Delete this message for good?": "Supprimer définitivement ce message ?",
    "Drafts": "Brouillons",
    "Encrypt": "Chiffrer",
    "Encrypt this message": "Chiffrer ce message",
    "Encrypt this message?": "Chiffrer ce message ?",
    "Encrypted messages match on their subject only: their text is never indexed. For"
    " messages that were not encrypted, the text is searched too.": (
        "Les messages chiffrés ne sont trouvés que par leur objet : leur texte n'est jamais"
        " indexé. Pour les messages non chiffrés, le texte est aussi recherché."
    ),
    "Encrypted. Click to send without encryption.": (
        "Chiffré. Cliquez pour envoyer sans chiffrement."
    ),
    "Encryption": "Chiffrement",
    "End (UTC)": "Fin (UTC)",
    "Enter dates as YYYY-MM-DD.": "Saisissez les dates au format AAAA-MM-JJ.",
    "Enter start and end as date and time.": "Saisissez le début et la fin en date et heure.",
    "Expires on {date} for {count} recipient(s) with a password.": (
        "Expire le {date} pour {count} destinataire(s) avec mot de passe."
    ),
    "Folder": "Dossier",
    "For {address}. Times are in UTC.": "Pour {address}. Heures en UTC.",
    "Forgotten: {count} sender(s) get the away message again.": (
        "Oublié : {count} expéditeur(s) recevront de nouveau le message d'absence."
    ),
    "Forward": "Transférer",
    "Friday": "vendredi",
    "From date": "À partir du",
    "Give the message a name.": "Donnez un nom au message.",
    "Has an OpenPGP key: {fingerprint}": "A une clé OpenPGP : {fingerprint}",
    "Hosted here: receives it encrypted, nothing to do": (
        "Hébergé ici : le reçoit chiffré, rien à faire"
    ),
    "Mail": "Messagerie",
    "Mail folders": "Dossiers de messagerie",
    "Mailbox": "Boîte",
    "Make another": "En créer un autre",
    "Message": "Message",
    "Monday": "lundi",
    "Move": "Déplacer",
    "Move to": "Déplacer vers",
    "Never answer": "Ne jamais répondre à",
    "New away message": "Nouveau message d'absence",
    "No away message saved for this address.": (
        "Aucun message d'absence enregistré pour cette adresse."
    ),
    "No key: gets a link to a secure page and needs a password": (
        "Pas de clé : reçoit un lien vers une page sécurisée et a besoin d'un mot de passe"
    ),
    "Not a valid mail address": "Adresse e-mail invalide",
    "Not encrypted": "Non chiffré",
    "Not encrypted. Click to encrypt this message.": (
        "Non chiffré. Cliquez pour chiffrer ce message."
    ),
    "Not signed.": "Non signé.",
    "Note the password now and tell it to the recipients another way (by phone, for"
    " example): it cannot be shown again after sending.": (
        "Notez le mot de passe maintenant et communiquez-le aux destinataires par un autre"
        " moyen (par téléphone, par exemple) : il ne pourra plus être affiché après l'envoi."
    ),
    "On {date}, {sender} wrote:": "Le {date}, {sender} a écrit :",
    "One address per line, or a whole domain written as @domain.": (
        "Une adresse par ligne, ou un domaine entier écrit @domaine."
    ),
    "Password for recipients without a key": "Mot de passe pour les destinataires sans clé",
    "Password set for recipients without a key.": (
        "Mot de passe défini pour les destinataires sans clé."
    ),
    "Please attach your files again.": "Veuillez joindre à nouveau vos fichiers.",
    "Your text held {count} NUL character(s), an invisible control character that mail"
    " cannot carry. Each is now shown as � in your text: check it and send it again.": (
        "Votre texte contenait {count} caractère(s) NUL, un caractère de contrôle invisible"
        " que le courrier ne peut pas transporter. Chacun est maintenant affiché comme � dans"
        " votre texte : vérifiez-le et envoyez-le à nouveau."
    ),
    "Recipients hosted here and recipients with an OpenPGP key get the message encrypted."
    " Everyone else gets a link to a secure page that opens with a password you set.": (
        "Les destinataires hébergés ici et ceux qui ont une clé OpenPGP reçoivent le message"
        " chiffré. Tous les autres reçoivent un lien vers une page sécurisée qui s'ouvre avec"
        " un mot de passe que vous définissez."
    ),
    "Recipients without a key get a link to a secure page that opens with this password."
    " Tell them the password another way. It cannot be shown again after sending.": (
        "Les destinataires sans clé reçoivent un lien vers une page sécurisée qui s'ouvre avec"
        " ce mot de passe. Communiquez-le-leur par un autre moyen. Il ne pourra plus être"
        " affiché après l'envoi."
    ),
    "Reply": "Répondre",
    "Reply all": "Répondre à tous",
    "Reset: answer everyone again": "Réinitialiser : répondre de nouveau à tous",
    "Saturday": "samedi",
    "Save draft": "Enregistrer le brouillon",
    "Search": "Recherche",
    "Secure page": "Page sécurisée",
    "Send": "Envoyer",
    "Sent": "Envoyés",
    "Sent without encryption while the lock is open": (
        "Envoyé sans chiffrement tant que le cadenas est ouvert"
    ),
    "Separate several addresses with commas.": "Séparez plusieurs adresses par des virgules.",
    "Set a password for the recipients without a key.": (
        "Définissez un mot de passe pour les destinataires sans clé."
    ),
    "Show or change": "Afficher ou modifier",
    "Signed by the sender: the signature is valid.": (
        "Signé par l'expéditeur : la signature est valide."
    ),
    "Signed by the sender: the signature is valid for the text only; the subject, date"
    " and recipients shown are not signed.": (
        "Signé par l'expéditeur : la signature ne vaut que pour le texte ; l'objet, la date"
        " et les destinataires affichés ne sont pas signés."
    ),
    "Signed by the sender, but the message arrived with other header fields (another"
    " subject or other recipients, for example) than the signed ones shown here: someone"
    " may have passed on a message that was written for someone else.": (
        "Signé par l'expéditeur, mais le message est arrivé avec d'autres en-têtes (un autre"
        " objet ou d'autres destinataires, par exemple) que ceux, signés, affichés ici :"
        " quelqu'un a peut-être transmis un message écrit pour une autre personne."
    ),
    "Signed, but it arrived with other header fields": (
        "Signé, mais arrivé avec d'autres en-têtes"
    ),
    "Signed by {signer}, but sent as {sender}.": (
        "Signé par {signer}, mais envoyé en tant que {sender}."
    ),
    "Signed with a key this server does not know.": (
        "Signé avec une clé que ce serveur ne connaît pas."
    ),
    "Start (UTC)": "Début (UTC)",
    "Sunday": "dimanche",
    "Switch off": "Désactiver",
    "The text is longer than {limit} characters: please shorten it.": (
        "Le texte dépasse {limit} caractères : veuillez le raccourcir."
    ),
    "This message was sent already: it is in your Sent folder, and was not sent again."
    " To send it once more, press Send again.": (
        "Ce message a déjà été envoyé : il se trouve dans votre dossier Envoyés et n'a pas"
        " été renvoyé. Pour l'envoyer une nouvelle fois, cliquez encore sur Envoyer."
    ),
    "The attachments are larger than {limit} bytes.": (
        "Les pièces jointes dépassent {limit} octets."
    ),
    "The away message for {address} is switched off.": (
        "Le message d'absence de {address} est désactivé."
    ),
    "The away message was deleted.": "Le message d'absence a été supprimé.",
    "The away message was saved.": "Le message d'absence a été enregistré.",
    "The draft was saved, encrypted to your key.": (
        "Le brouillon a été enregistré, chiffré avec votre clé."
    ),
    "The end must be after the start.": "La fin doit être après le début.",
    "The message could not be sent. Please try again in a moment.": (
        "Le message n'a pas pu être envoyé. Veuillez réessayer dans un instant."
    ),
    "The message is larger than {limit} bytes.": "Le message dépasse {limit} octets.",
    "Message too large": "Message trop volumineux",
    "Not kept: {files}.": "Non conservés : {files}.",
    "The message is too large: it may hold at most {size} in all, its attachments at most"
    " {attachments} together. Nothing was sent.": (
        "Le message est trop volumineux : il peut contenir au plus {size} au total, et ses"
        " pièces jointes au plus {attachments} ensemble. Rien n'a été envoyé."
    ),
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Nothing was sent. Go back to it with your browser's Back button and"
    " attach fewer or smaller files.": (
        "Le message est trop volumineux : texte et pièces jointes peuvent faire au plus {size}"
        " ensemble. Rien n'a été envoyé. Revenez au message avec le bouton Retour de votre"
        " navigateur et joignez moins de fichiers ou des fichiers plus petits."
    ),
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Remove attachments or shorten the text.": (
        "Le message est trop volumineux : texte et pièces jointes peuvent faire au plus {size}"
        " ensemble. Retirez des pièces jointes ou raccourcissez le texte."
    ),
    "The message was deleted for good.": "Le message a été supprimé définitivement.",
    "The message was moved to the trash.": "Le message a été placé dans la corbeille.",
    "The message was moved to {folder}.": "Le message a été déplacé vers {folder}.",
    "The message was not sent: {reason}": "Le message n'a pas été envoyé : {reason}",
    "The original subject is added after it.": "L'objet d'origine est ajouté après.",
    "The signature does not match: the message may have been changed.": (
        "La signature ne correspond pas : le message a peut-être été modifié."
    ),
    "There is no mailbox {address} here.": "Il n'y a pas de boîte {address} ici.",
    "There is no such mailbox here": "Cette boîte n'existe pas ici",
    "These recipients have no key and need a password for their secure page: {addresses}."
    " A password was suggested below; note it before sending.": (
        "Ces destinataires n'ont pas de clé et ont besoin d'un mot de passe pour leur page"
        " sécurisée : {addresses}. Un mot de passe est proposé ci-dessous ; notez-le avant"
        " l'envoi."
    ),
    "These recipients have no key. They get a link to a secure page that opens with this"
    " password:": (
        "Ces destinataires n'ont pas de clé. Ils reçoivent un lien vers une page sécurisée qui"
        " s'ouvre avec ce mot de passe :"
    ),
    "This message cannot be decrypted with your keys.": (
        "Ce message ne peut pas être déchiffré avec vos clés."
    ),
    "The server is busy with many large messages right now; nothing was sent."
    " Please try again in a minute.": (
        "Le serveur traite en ce moment beaucoup de gros messages ; rien n’a été envoyé."
        " Veuillez réessayer dans une minute."
    ),
    "This message cannot be shown: it is too large or too complex to open safely."
    " Your administrator can see it in the server log.": (
        "Ce message ne peut pas être affiché : il est trop volumineux ou trop complexe pour"
        " être ouvert sans risque. Votre administrateur le voit dans le journal du serveur."
    ),
    "Thursday": "jeudi",
    "Trash": "Corbeille",
    "Tuesday": "mardi",
    "Until date": "Jusqu'au",
    "Use this password": "Utiliser ce mot de passe",
    "Wednesday": "mercredi",
    "Weekdays": "Jours de la semaine",
    "When": "Quand",
    "Words": "Mots",
    "Write": "Écrire",
    "Write a message": "Écrire un message",
    "Write a subject.": "Saisissez un objet.",
    "Write the message.": "Rédigez le message.",
    "You cannot send from {address}.": "Vous ne pouvez pas envoyer depuis {address}.",
    "Your message was sent.": "Votre message a été envoyé.",
    "Your message was sent. {count} recipient(s) get a link to a secure page: give them the"
    " password another way (by phone, for example).": (
        "Votre message a été envoyé. {count} destinataire(s) reçoivent un lien vers une page"
        " sécurisée : communiquez-leur le mot de passe par un autre moyen (par téléphone, par"
        " exemple)."
    ),
    "any time": "à tout moment",
    "every day": "tous les jours",
    "from {date}": "à partir du {date}",
    "hosted": "hébergé",
    "invalid": "invalide",
    "key": "clé",
    "looking up…": "recherche…",
    "needs a password": "mot de passe requis",
    "no such mailbox": "boîte inexistante",
    "off": "désactivé",
    "until {date}": "jusqu'au {date}",
    "{address} is not a valid mail address.": "{address} n'est pas une adresse e-mail valide.",
    "A header field of this message could not be written safely.": (
        "Un champ d'en-tête de ce message n'a pas pu être écrit de façon sûre."
    ),
    "{count} message(s) found": "{count} message(s) trouvé(s)",
    "{count} sender(s) answered in the last 7 days.": (
        "{count} expéditeur(s) ont reçu une réponse ces 7 derniers jours."
    ),
    "{field} is too long.": "{field} est trop long.",
    "“{entry}” is neither an address nor a domain written as @domain.": (
        "« {entry} » n'est ni une adresse ni un domaine écrit @domaine."
    ),
    "“{name}” is now the active away message for {address}.": (
        "« {name} » est maintenant le message d'absence actif de {address}."
    ),
}
